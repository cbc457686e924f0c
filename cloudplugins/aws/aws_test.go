package aws_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/triad-k8s/triad/cloudplugins/aws"
	"github.com/triad-k8s/triad/cloudplugins/aws/internal/awsfake"
	"github.com/triad-k8s/triad/cloudplugins/conformance"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

const region = "eu-west-1"

// fakeConfig is the plugin configuration that points at fake.
func fakeConfig(fake *awsfake.Server) aws.Config {
	seed := fake.Seed()
	return aws.Config{
		Region:           seed.Region,
		VPCID:            seed.VPCID,
		Subnets:          seed.Subnets,
		PrivateAddresses: []string{seed.PrivateAddress},
		Endpoints:        map[string]string{"ec2": fake.URL(), "elasticloadbalancing": fake.URL()},
		PollInterval:     aws.Duration{Duration: 5 * time.Millisecond},
		WaitTimeout:      aws.Duration{Duration: 30 * time.Second},
	}
}

func newFake(t *testing.T) *awsfake.Server {
	fake := awsfake.New(region)
	t.Cleanup(fake.Close)
	return fake
}

func newProvider(t *testing.T, fake *awsfake.Server, cfg aws.Config) *aws.Provider {
	t.Helper()
	p, err := aws.New(t.Context(), cfg, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDTRIADTEST", "secret", "")))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fixture(fake *awsfake.Server, p sdk.Provider) conformance.Fixture {
	seed := fake.Seed()
	return conformance.Fixture{Provider: p, Seed: seed.Instance, PrivateAddressID: seed.PrivateAddress, PublicAddressID: seed.PublicAddress}
}

func TestConformanceInProcess(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Fixture {
		fake := newFake(t)
		return fixture(fake, newProvider(t, fake, fakeConfig(fake)))
	})
}

var _ = context.Background
var _ = json.Marshal
